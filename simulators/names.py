"""The scenarios the simulator can inject. ``background_leak`` (days of night flow) and
``device_offline`` (real-time silence) come last: the follow mode never picks them, and
the default set leaves them out."""

SCENARIOS = (
    "gas_leak",
    "pipe_burst",
    "rainstorm_waterlogging",
    "heating_leak",
    "underpass_flooding",
    "manhole_cover",
    "tunnel_gas",
    "bridge_overload",
    "smoke_fire",
    "missing_cover",
    "background_leak",
    "device_offline",
)
