//! The token engine of mailoauth: provider presets, authorization flows, a sealed per-account
//! token store and single-flight refresh. It knows nothing about mail protocols or listeners;
//! the `mailoauth` binary turns its configuration into [`Account`]s and asks a [`Refresher`] for
//! access tokens.

#![forbid(unsafe_code)]

pub mod account;
pub mod explain;
pub mod flow;
pub mod oauth;
pub mod provider;
pub mod refresh;
pub mod sasl;
pub mod store;
pub mod token;

pub use account::{Account, FlowKind, SecretSource};
pub use refresh::{RefreshError, Refresher};
pub use store::{AccountState, Store, StoreError};
pub use token::{Grant, TokenSet};
