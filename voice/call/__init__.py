"""The live call: frames from a protocol adapter through the audio pipeline to the voiceprint watch."""
