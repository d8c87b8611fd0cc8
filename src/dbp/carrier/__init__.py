"""The data carrier: the QR code that links a battery to its passport (Art. 77(3), Annex XIII point 1)."""
