"""Measurement shared by every stage: ranking / next-item / pointwise metrics with bootstrap
intervals and paired comparisons (``metrics``), and agreement between two rankings: top-k
overlap, Kendall tau, rank-biased overlap (``agreement``). Imports nothing above the base layer."""
