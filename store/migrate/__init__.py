"""Migration into and out of the store (issue 15): mbox and Maildir readers
and writers for imsimport and imsexport."""
