//! Synthetic Clerk traffic (placeholder replaced below).
