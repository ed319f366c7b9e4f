//! `sessionflow ingest`: Clerk's webhooks (Svix, the Standard Webhooks scheme) into the input
//! topic. A request is verified before anything else is read from it, and answered 200 only
//! once the broker acknowledged its write.

pub mod signature;
