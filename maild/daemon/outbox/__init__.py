"""The replies' way out: the claim-send-mark loop, its process, its journal and the transports."""
