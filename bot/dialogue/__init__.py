"""The dialogue layer: how a message fits the conversation it arrives in."""
