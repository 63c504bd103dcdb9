//! Scripted fake SMTP upstream. (In progress.)
