import os

# Tests never touch the network: no hub downloads, no Selenium Manager.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")
