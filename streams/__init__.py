"""Stream processing on Kafka: the detect, video and correlate agents and the store sink."""
