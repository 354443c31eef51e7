"""objaudio training package: SynthScenes, the stand-in sound classifier, training loops."""
