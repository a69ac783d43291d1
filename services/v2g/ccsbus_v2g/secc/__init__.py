"""The SECC (charger side) of DIN 70121 and ISO 15118-2: pure state machines, trees in, trees out."""
