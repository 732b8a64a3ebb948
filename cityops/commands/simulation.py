"""Simulation, replay, recording, drills and scoring."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from cityops.cli_support import (
    CONTEXT,
    duration_of,
    env_option,
    load_settings,
    speed_of,
    vendors_option,
)
from cityops.errors import CityOpsError
from simulators.names import SCENARIOS as SIM_SCENARIOS


@click.command("simulate", context_settings=CONTEXT)
@env_option("CITYOPS_SIM_CITY", "--city", required=True)
@env_option(
    "CITYOPS_SIM_CREDENTIALS",
    "--credentials",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="credentials-CITY.csv written by onboarding: each device publishes as itself.",
)
@click.option("--duration", default="60m", show_default=True, help="Simulated window (ends now).")
@env_option(
    "CITYOPS_SIM_SPEED",
    "--speed",
    type=float,
    default=60.0,
    help="Time compression of the window (60: a simulated minute a second).",
)
@click.option("--interval-s", type=float, default=60.0, help="Reporting interval of the sensors.")
@click.option(
    "--scenarios",
    default=",".join(SIM_SCENARIOS[:-2]),
    help="Comma-separated scenarios to inject: " + ", ".join(SIM_SCENARIOS) + "; '' for none.",
)
@click.option(
    "--truth",
    "truth_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the ground truth of the injected scenarios here (JSONL).",
)
@click.option("--seed", type=int, default=7)
@click.option(
    "--follow/--no-follow",
    default=False,
    help="Go on in real time after the window, injecting a scenario now and then.",
)
@env_option(
    "CITYOPS_SIM_PUSH_TOKENS",
    "--push-tokens",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON of push source → URL token, for sources of platforms that push without a "
    "signature (CTWing, iSecure Center); `cityops demo` writes push-tokens-CITY.json.",
)
@vendors_option
def simulate_cmd(
    city: str,
    credentials: Path,
    duration: str,
    speed: float,
    interval_s: float,
    scenarios: str,
    truth_out: Path | None,
    seed: int,
    follow: bool,
    push_tokens: Path | None,
    vendor_dir: Path | None,
) -> None:
    """Play an onboarded city's devices, with scenarios: readings and camera events over
    MQTT, each device as itself; the readings of http devices pushed over HTTPS by their
    source, as its platform does (our signed envelope in batches, CTWing's and OneNET's
    one message a request, iSecure Center's camera events by the city's event codes;
    retried, now and then repeated) to CITYOPS_PUSH_URL."""
    from datetime import timedelta

    from cityops.simulate import simulate

    names = [n.strip() for n in scenarios.split(",") if n.strip()]
    result = simulate(
        load_settings(),
        city,
        credentials,
        duration=duration_of(duration),
        speed=speed,
        interval=timedelta(seconds=interval_s),
        scenarios=names,
        truth_out=truth_out,
        seed=seed,
        follow=follow,
        push_tokens=push_tokens,
        vendor_dir=vendor_dir,
    )
    click.echo(
        json.dumps(
            {
                "ticks": result.ticks,
                "messages": result.messages,
                "pushed": result.pushed,
                "scenarios": result.scenarios,
                "truth": str(result.truth_file) if result.truth_file else None,
            }
        )
    )


@click.command("replay", context_settings=CONTEXT)
@click.argument("recording", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--city", required=True)
@click.option(
    "--credentials",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="credentials-CITY.csv of onboarding: each device publishes as itself.",
)
@click.option("--speed", default="1x", help="Playback speed, e.g. 10x.")
@click.option(
    "--shift/--no-shift",
    default=True,
    help="Move the recording in time so that the replay ends now.",
)
def replay_cmd(recording: Path, city: str, credentials: Path, speed: str, shift: bool) -> None:
    """Publish a recording (JSONL or CSV) over MQTT in time order."""
    from simulators.replay import replay

    broker = load_settings().broker()
    result = replay(broker, city, recording, credentials, speed_of(speed), shift=shift)
    click.echo(json.dumps(result))


@click.command("record", context_settings=CONTEXT)
@click.option("--city", required=True)
@click.option(
    "--source",
    type=click.Choice(["kafka", "mqtt"]),
    default="kafka",
    help="Canonical records from Kafka, or the raw MQTT messages.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--duration", default="60s", help="How long to record, e.g. 90s or 10m.")
@click.option("--from-beginning", is_flag=True, help="Kafka: start at the oldest record.")
def record_cmd(city: str, source: str, out: Path, duration: str, from_beginning: bool) -> None:
    """Capture a city's readings and video events to JSONL, appended to OUT."""
    from simulators.replay import record_kafka, record_mqtt

    settings = load_settings()
    if source == "kafka":
        n = record_kafka(settings.kafka_bootstrap, city, out, duration_of(duration), from_beginning)
    else:
        n = record_mqtt(settings.broker(), city, out, duration_of(duration))
    click.echo(json.dumps({"recorded": n, "out": str(out)}))


@click.command("drill", context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (last line).")
@click.option(
    "--short", is_flag=True, help="The shorter variants the test suite runs (e.g. bridge: 10 s)."
)
def drill_cmd(names: tuple[str, ...], as_json: bool, short: bool) -> None:
    """Run drills (security, hostile, mosquitto, mosquitto-crash, bridge, kafka, postgres,
    worker, workers, kafka-node, or all) on the real services. kafka-node needs three
    Kafka nodes (CITYOPS_KAFKA_BROKERS=3); all takes it when the stack has them."""
    from drills import CLUSTER_DRILLS, DRILLS, run_drills

    settings = load_settings()
    chosen = list(names)
    if "all" in names:
        chosen = [n for n in DRILLS if n not in CLUSTER_DRILLS or settings.kafka_brokers >= 3]
    result = run_drills(settings, chosen, short=short)
    if not as_json:
        for row in result["table"]:
            click.echo(
                f"{row['name']:<16} {'ok' if row['ok'] else 'FAILED':<7} sent {row['sent']:>6}"
                f"  stored {row['stored']:>6}  lost {row['lost']}  duplicated {row['duplicated']}"
                f"  recovery {row['recovery_s']} s"
            )
    click.echo(json.dumps(result))
    if result["failed"]:
        sys.exit(1)


@click.command("score", context_settings=CONTEXT)
@click.argument("truth", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@env_option(
    "CITYOPS_API_URL",
    "--api",
    "api_url",
    default="http://127.0.0.1:8400",
    help="The cockpit API to read incidents from.",
)
@env_option("CITYOPS_API_KEY", "--key", required=True, help="An API key that may read the city.")
@click.option("--city", required=True)
def score_cmd(truth: Path, api_url: str, key: str, city: str) -> None:
    """Precision, recall and time to detect per incident type against a ground truth."""
    import httpx

    from simulators.score import score

    rows = [json.loads(line) for line in truth.read_text().splitlines() if line.strip()]
    if not rows:
        raise CityOpsError(f"{truth} holds no scenarios")
    start = min(r["start"] for r in rows)
    items: list[dict[str, Any]] = []
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}) as c:
        offset = 0
        while True:
            r = c.get(
                "/v1/alerts",
                params={"city": city, "start": start, "limit": 500, "offset": offset},
            )
            if r.status_code != 200:
                raise CityOpsError(f"the API answered {r.status_code}: {r.text[:300]}")
            page = r.json()
            items.extend(page["items"])
            offset += len(page["items"])
            if offset >= page["total"] or not page["items"]:
                break
    found = [i for i in items if i["started_at"] >= start]
    click.echo(json.dumps(score(rows, found), ensure_ascii=False))
