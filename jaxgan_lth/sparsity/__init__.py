"""Sparsity: boolean parameter masks (:mod:`.masks`) and magnitude / random pruning."""
