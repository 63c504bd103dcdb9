//! The IMAP server core (client side, before login): sans-IO. (In progress.)
