"""Task metrics; each is checked against an independent implementation (scikit-learn, scipy) in the tests."""
