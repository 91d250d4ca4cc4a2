"""Adapters that turn a trained model into "features + linear head" (MATH.md §1, §7).

PLACEHOLDER written by the lead; the adapters author fills it in.
"""
