"""Identity: face encodings, the enrolled gallery and matching."""
