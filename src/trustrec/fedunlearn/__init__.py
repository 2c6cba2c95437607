"""Federated unlearning: forget a class or a backdoor across a federation (FedAF and
its baselines, with negative controls and an audit)."""
