"""Network services: lmtpd (mail in)."""
