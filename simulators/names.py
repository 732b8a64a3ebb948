"""The scenarios the simulator can inject (``device_offline`` last: it needs real-time
gaps, so the follow mode never picks it)."""

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
    "device_offline",
)
