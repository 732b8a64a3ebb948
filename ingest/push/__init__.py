"""HTTPS push ingest: readings pushed by carrier IoT platforms and vendor clouds.

``POST /v1/ingest/{city}/push`` takes one report (a JSON object), a JSON array of
reports, or ``{"reports": [...]}``. The caller is a *push source* of that city
(``cityops push source create``) and proves it with either

* ``Authorization: Bearer cpk_<id>.<secret>`` (its ingest key), or
* ``X-CityOps-Source: <name>`` and ``X-CityOps-Signature`` (:mod:`lifeline.signature`,
  with the source's secret); ``t`` must be within the replay window of the platform's
  clock, and a signature is accepted once.

Each report names its device (``device_id``, or where the source's vendor mapping says);
the device must be onboarded in that city with ``transport = http`` and this source.
Reports go through the same decoder as MQTT messages (vendor mappings, units, physical
ranges, times); a bad report is dead-lettered with its reason and listed in the answer,
the others go on. Readings are produced as batch records, ``acks=all``: a 2xx answer
means they are in Kafka. Retries are idempotent: the store keeps a reading once by its
key (device, metric, time).

Carrier and video platforms that cannot send our envelope push in their own formats to
``/v1/ingest/{city}/{platform}/{source}``: one connector per platform
(:mod:`~ingest.push.connectors`: verify the request, parse it into messages, answer as
the platform expects), served by :mod:`~ingest.push.platforms` with the same decoder,
dead letters, rate limits and producer.

The rooms: :mod:`~ingest.push.handler` (who is calling, what the reports hold),
:mod:`~ingest.push.platforms` and :mod:`~ingest.push.connectors` (the platforms' own
formats), :mod:`~ingest.push.limits` (rates, replays), :mod:`~ingest.push.producer`
(records of concurrent requests produced together), :mod:`~ingest.push.answers` and
:mod:`~ingest.push.app` (the ASGI app that ``cityops push serve`` runs).
"""
