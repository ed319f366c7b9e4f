//! Status codes of one engine: the known statuses by their fixed codes, and each unknown
//! status text interned once, counted by the sessions holding it and reclaimed when none does.

use hashbrown::HashMap;

use crate::model::{StatusCode, KNOWN_STATUSES};

/// Statuses by code. An unknown status string is interned once and counted by the sessions
/// that hold it; once none does, its code and text are reclaimed, so the table never holds
/// more unknown statuses than the sessions held need (input cannot grow it without bound).
#[derive(Default)]
pub(super) struct StatusTable {
    /// Texts by code − `FIRST_OTHER`; empty while the code is free.
    others: Vec<Box<str>>,
    /// Sessions holding each other status, by code − `FIRST_OTHER`.
    holders: Vec<u32>,
    index: HashMap<Box<str>, u32>,
    /// Codes no session holds any more. Reclaimed only at the next interning: until then
    /// their text may still be read (the status an event says a session left).
    unheld: Vec<u32>,
    free: Vec<u32>,
}

impl StatusTable {
    pub(super) fn code(&mut self, status: &str) -> StatusCode {
        if let Some(code) = StatusCode::known(status) {
            return code;
        }
        if let Some(&code) = self.index.get(status) {
            return StatusCode(code);
        }
        self.reclaim();
        let code = match self.free.pop() {
            Some(code) => {
                self.others[(code - StatusCode::FIRST_OTHER) as usize] = status.into();
                code
            }
            None => {
                self.others.push(status.into());
                self.holders.push(0);
                StatusCode::FIRST_OTHER + self.others.len() as u32 - 1
            }
        };
        self.index.insert(status.into(), code);
        StatusCode(code)
    }

    fn reclaim(&mut self) {
        for code in self.unheld.drain(..) {
            let at = (code - StatusCode::FIRST_OTHER) as usize;
            if self.holders[at] == 0 && !self.others[at].is_empty() {
                self.index.remove(&*self.others[at]);
                self.others[at] = Box::default();
                self.free.push(code);
            }
        }
    }

    /// A session took status `code`.
    pub(super) fn hold(&mut self, code: StatusCode) {
        if let Some(at) = code.0.checked_sub(StatusCode::FIRST_OTHER) {
            self.holders[at as usize] += 1;
        }
    }

    /// A session left status `code`.
    pub(super) fn release(&mut self, code: StatusCode) {
        if let Some(at) = code.0.checked_sub(StatusCode::FIRST_OTHER) {
            let holders = &mut self.holders[at as usize];
            *holders -= 1;
            if *holders == 0 {
                self.unheld.push(code.0);
            }
        }
    }

    /// Distinct unknown statuses interned (held, or not yet reclaimed).
    pub(super) fn interned(&self) -> usize {
        self.index.len()
    }

    pub(super) fn name(&self, code: StatusCode) -> &str {
        match KNOWN_STATUSES.get(code.0 as usize) {
            Some(name) => name,
            None => &self.others[(code.0 - StatusCode::FIRST_OTHER) as usize],
        }
    }
}
