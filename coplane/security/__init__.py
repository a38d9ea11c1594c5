"""Security primitives every layer may use: masking secrets, reading secret files, the outbound
allow list and the secret keys. Nothing here imports the rest of coplane."""
