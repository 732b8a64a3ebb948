"""The ``cityops`` console script: every service and tool is a subcommand."""

from __future__ import annotations

import os

import click

from cityops import __version__
from cityops.cli_support import CONTEXT, CityOpsGroup
from cityops.commands import bench, cim, cockpit, grid, pipeline, platform, push, simulation


@click.group(cls=CityOpsGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="cityops")
def main() -> None:
    """CityOps: unified city-operations platform for lifeline monitoring.

    Configuration comes from CITYOPS_* environment variables and the .env file
    (see `cityops config show`).
    """
    from cityops.logs import configure

    configure(os.environ.get("CITYOPS_LOG_LEVEL", "INFO"))


for _command in (
    *(platform.config, platform.secrets, platform.stack, platform.broker, platform.demo),
    *(platform.schema, platform.db),
    *(pipeline.onboard_cmd, pipeline.ingest_cmd, pipeline.sink_cmd, pipeline.worker_cmd),
    pipeline.detect_cmd,
    *(cockpit.api, cim.cim, grid.grid, push.push),
    *(simulation.simulate_cmd, simulation.replay_cmd, simulation.record_cmd),
    *(simulation.drill_cmd, simulation.score_cmd, bench.bench_cmd),
):
    main.add_command(_command)


if __name__ == "__main__":
    main()
