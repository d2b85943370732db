"""JOSE: verifying JWTs (end-user tokens, agent attestations, keyward's own tokens) in one place."""
