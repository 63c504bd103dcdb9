//! The IMAP upstream core (OAuth login to the real server): sans-IO. (In progress.)
