"""The passport registry (the role of the Commission's DPP registry, Implementing Regulation (EU) 2026/1778)."""
