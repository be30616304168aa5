"""Datasets: the catalogue (`catalog`), image sources (`images`), transforms, DataModules, embedded data."""
