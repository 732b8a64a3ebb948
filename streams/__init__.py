"""Stream processing on Kafka: the store sink (and the detection agents)."""
