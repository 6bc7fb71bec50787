"""Exit statuses of sysexits.h, which MTAs read from a local delivery agent
(`deliver`): 75 means "try again later", the rest but 0 "return to sender"."""

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78
