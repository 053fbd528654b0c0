"""From analysed camera frames to presence states: tracking, classification, state machine."""
