"""The participant node: a state machine driven by chain state, with a state directory."""
