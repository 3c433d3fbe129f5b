//! Operator-assigned numbers: the server, not the payload, picks the number, from ranges the
//! operator owns. The phone may ask for a particular free number of a range, or take the next
//! free one.
//!
//! Durability: `number_assignment` has the number as primary key and the receipt as a unique
//! key, so a number is handed out at most once, ever, and a receipt holds at most one number. An
//! assignment is written before the receipt is bound; a retry (lost answer, crash between the two
//! writes) finds the receipt's assignment and gets the same number.

use chaincall_identity::PhoneNumber;
use sqlx::Row;

use super::{BoxFuture, NumberClaim, NumberVerifier};
use crate::db::{Db, DbError};
use crate::error::ApiError;

/// An inclusive range of E.164 numbers with one digit count (so text order is number order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberRange {
    first: u64,
    last: u64,
    digits: usize,
}

impl NumberRange {
    /// Parses `first..=last`; both E.164, same number of digits, `first ≤ last`.
    pub fn parse(first: &str, last: &str) -> Result<Self, &'static str> {
        let a = PhoneNumber::parse(first).map_err(|_| "first is not an E.164 number")?;
        let b = PhoneNumber::parse(last).map_err(|_| "last is not an E.164 number")?;
        let (a, b) = (&a.as_str()[1..], &b.as_str()[1..]);
        if a.len() != b.len() {
            return Err("first and last must have the same number of digits");
        }
        // PhoneNumber holds at most 15 digits: fits a u64.
        let first = a.parse().map_err(|_| "first is not a number")?;
        let last = b.parse().map_err(|_| "last is not a number")?;
        if first > last {
            return Err("first is above last");
        }
        Ok(Self {
            first,
            last,
            digits: a.len(),
        })
    }

    fn text(&self, n: u64) -> String {
        format!("+{n:0width$}", width = self.digits)
    }

    fn value(&self, phone: &str) -> Option<u64> {
        let digits = phone.strip_prefix('+')?;
        if digits.len() != self.digits {
            return None;
        }
        digits
            .parse()
            .ok()
            .filter(|n| (self.first..=self.last).contains(n))
    }

    /// Whether `phone` lies in this range.
    pub fn contains(&self, phone: &PhoneNumber) -> bool {
        self.value(phone.as_str()).is_some()
    }
}

/// The `assigned` verifier.
#[derive(Debug)]
pub struct AssignedNumbers {
    db: Db,
    ranges: Vec<NumberRange>,
}

fn internal(e: impl Into<DbError>) -> ApiError {
    let e: DbError = e.into();
    tracing::error!(
        error = &e as &dyn std::error::Error,
        "number assignment database failure"
    );
    ApiError::Internal
}

impl AssignedNumbers {
    /// Hands out numbers from `ranges`, in order; state in `db` (`number_assignment`).
    pub fn new(db: Db, ranges: Vec<NumberRange>) -> Self {
        Self { db, ranges }
    }

    async fn of_receipt(&self, receipt_id: &str) -> Result<Option<String>, ApiError> {
        let row = sqlx::query("SELECT phone FROM number_assignment WHERE receipt_id = $1")
            .bind(receipt_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(internal)?;
        row.map(|r| r.try_get::<String, _>(0))
            .transpose()
            .map_err(internal)
    }

    /// Records `phone` for `receipt_id`; false if the number is taken.
    async fn take(&self, phone: &str, receipt_id: &str, now_ms: i64) -> Result<bool, ApiError> {
        let done = sqlx::query(
            "INSERT INTO number_assignment (phone, receipt_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(phone)
        .bind(receipt_id)
        .bind(now_ms)
        .execute(self.db.pool())
        .await
        .map_err(internal)?;
        Ok(done.rows_affected() == 1)
    }

    /// The lowest number of `range` not assigned yet: one above the highest assigned, or, once
    /// the top is reached, the first gap (left by numbers that were asked for by name).
    async fn next_free(&self, range: &NumberRange) -> Result<Option<String>, ApiError> {
        let (lo, hi) = (range.text(range.first), range.text(range.last));
        let max: Option<String> = sqlx::query(
            "SELECT MAX(phone) FROM number_assignment WHERE phone >= $1 AND phone <= $2",
        )
        .bind(&lo)
        .bind(&hi)
        .fetch_one(self.db.pool())
        .await
        .and_then(|r| r.try_get(0))
        .map_err(internal)?;
        let Some(max) = max.and_then(|m| range.value(&m)) else {
            return Ok(Some(lo));
        };
        if max < range.last {
            return Ok(Some(range.text(max + 1)));
        }
        let taken = sqlx::query(
            "SELECT phone FROM number_assignment WHERE phone >= $1 AND phone <= $2 ORDER BY phone",
        )
        .bind(&lo)
        .bind(&hi)
        .fetch_all(self.db.pool())
        .await
        .map_err(internal)?;
        let mut expect = range.first;
        for row in taken {
            let phone: String = row.try_get(0).map_err(internal)?;
            match range.value(&phone) {
                Some(n) if n == expect => expect += 1,
                Some(_) => return Ok(Some(range.text(expect))),
                None => {}
            }
        }
        Ok((expect <= range.last).then(|| range.text(expect)))
    }

    async fn assign(&self, claim: NumberClaim<'_>) -> Result<PhoneNumber, ApiError> {
        let parse = |p: &str| {
            PhoneNumber::parse(p).map_err(|e| ApiError::InvalidField {
                field: "phone",
                reason: e.to_string(),
            })
        };
        if let Some(phone) = self.of_receipt(claim.receipt_id).await? {
            return parse(&phone);
        }
        if !claim.requested.trim().is_empty() {
            let wanted = parse(claim.requested)?;
            if !self.ranges.iter().any(|r| r.contains(&wanted)) {
                return Err(ApiError::NumberNotInRange);
            }
            if self
                .take(wanted.as_str(), claim.receipt_id, claim.now_ms)
                .await?
            {
                tracing::info!(
                    receipt_id = claim.receipt_id,
                    phone = wanted.as_str(),
                    "number assigned (asked for)"
                );
                return Ok(wanted);
            }
            // A concurrent retry of the same receipt may have taken it.
            return match self.of_receipt(claim.receipt_id).await? {
                Some(phone) => parse(&phone),
                None => Err(ApiError::NumberUnavailable),
            };
        }
        for range in &self.ranges {
            // Concurrent assignments may race for the same candidate: the loser tries the next.
            for _ in 0..32 {
                let Some(candidate) = self.next_free(range).await? else {
                    break;
                };
                if self
                    .take(&candidate, claim.receipt_id, claim.now_ms)
                    .await?
                {
                    tracing::info!(receipt_id = claim.receipt_id, phone = %candidate, "number assigned");
                    return parse(&candidate);
                }
                if let Some(phone) = self.of_receipt(claim.receipt_id).await? {
                    return parse(&phone);
                }
            }
        }
        Err(ApiError::NumbersExhausted)
    }
}

impl NumberVerifier for AssignedNumbers {
    fn kind(&self) -> &'static str {
        "assigned"
    }

    fn claim<'a>(&'a self, claim: NumberClaim<'a>) -> BoxFuture<'a, Result<PhoneNumber, ApiError>> {
        Box::pin(self.assign(claim))
    }

    /// The operator checked ownership out of band and authorised this number's recovery through
    /// the admin API (`POST /v1/admin/subscribers/{phone}/recovery`): one use, until it expires.
    fn prove_recovery<'a>(&'a self, claim: NumberClaim<'a>) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let phone =
                PhoneNumber::parse(claim.requested).map_err(|e| ApiError::InvalidField {
                    field: "phone",
                    reason: e.to_string(),
                })?;
            if self
                .db
                .use_recovery_grant(phone.as_str(), claim.now_ms)
                .await
                .map_err(internal)?
            {
                Ok(())
            } else {
                Err(ApiError::RecoveryNotAuthorized)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_contain() {
        let r = NumberRange::parse("+15550100", "+15550199").unwrap();
        assert!(r.contains(&PhoneNumber::parse("+15550150").unwrap()));
        assert!(!r.contains(&PhoneNumber::parse("+15550200").unwrap()));
        assert!(!r.contains(&PhoneNumber::parse("+155501500").unwrap()));
        assert_eq!(r.text(15550101), "+15550101");
        assert!(NumberRange::parse("+15550199", "+15550100").is_err());
        assert!(NumberRange::parse("+1555010", "+15550199").is_err());
    }
}
