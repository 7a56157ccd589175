"""Privacy: secure aggregation (masked fixed-point updates, key agreement, Shamir shares) and differential privacy.

Pure functions over numpy arrays and bytes; nothing here touches the chain, storage or the network.
It sits below ``aggregation`` so that the contribution rule can unmask and add noise.

Secure aggregation (docs/privacy.md): ``context`` (round, labels, member order), ``fixed_point`` (the
ring Z_(2^64)), ``masks`` (seekable AES-CTR masks, masking and unmasking a slice), ``keys`` (X25519
long-term keys, secp256k1 mask keys, HKDF), ``vss`` (Feldman verifiable t-of-n shares over secp256k1)
and ``share_box`` (AES-GCM boxes carrying shares).
"""
