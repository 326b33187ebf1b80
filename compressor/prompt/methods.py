"""The prompt compressors `compressor prompt compress --method` offers (EHPC and the baselines it is compared with)."""

METHODS = ("ehpc", "llmlingua", "longllmlingua", "random", "ends")
