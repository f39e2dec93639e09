"""The recurrent backend: cells (forward/backward), the network, optimisers, the training loop."""
