"""Reading and writing RFC 5322 mail: parsing, authentication results, composing, Maildirs, PEC."""
