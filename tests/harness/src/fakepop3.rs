//! Scripted fake POP3 upstream. (In progress.)
