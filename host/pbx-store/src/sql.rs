//! SQL built at run time for either backend. On PostgreSQL placeholders are
//! numbered (`$1`, `$2`, ...), the only form it takes; on SQLite they are
//! anonymous (`?`), bound in order. sqlx's own `QueryBuilder` writes `?` under
//! `Any`, which PostgreSQL rejects; this is the small part of it the store
//! uses.

use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;
use sqlx::{Arguments, AssertSqlSafe, Encode, Type};

use crate::Backend;

/// Bound parameters a multi-row statement aims at. SQLite keeps the names of
/// named parameters (`$N`) in a list it walks to find each one, both when it
/// prepares a statement and when the driver asks each parameter's name as it
/// binds, so with names the cost grows with the square of the parameters in
/// one statement: 9,600 of them (400 call records) spent more time binding
/// than the rest of the call path took. Anonymous `?` parameters, which the
/// builder writes for SQLite, are not in that list; a few hundred per
/// statement still keep statements few and each one's arguments small.
const PARAMS_PER_STATEMENT: usize = 256;

/// Rows of `columns` parameters each that one multi-row statement takes.
pub(crate) const fn rows_per_statement(columns: usize) -> usize {
    let rows = PARAMS_PER_STATEMENT / if columns == 0 { 1 } else { columns };
    if rows == 0 { 1 } else { rows }
}

/// A statement being assembled: text plus the arguments bound so far.
pub(crate) struct QueryBuilder {
    sql: String,
    args: AnyArguments,
    error: Option<sqlx::error::BoxDynError>,
    /// Whether placeholders are numbered (`$N`, PostgreSQL) or anonymous
    /// (`?`, SQLite).
    numbered: bool,
}

impl QueryBuilder {
    /// A statement for `backend`, starting with `init` (which binds nothing).
    pub(crate) fn new(backend: Backend, init: impl Into<String>) -> QueryBuilder {
        QueryBuilder {
            sql: init.into(),
            args: AnyArguments::default(),
            error: None,
            numbered: backend == Backend::Postgres,
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: impl std::fmt::Display) -> &mut QueryBuilder {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = write!(self.sql, "{sql}");
        self
    }

    /// Appends the next placeholder and binds `value` to it.
    pub(crate) fn push_bind<'t, T>(&mut self, value: T) -> &mut QueryBuilder
    where
        T: Encode<'t, Any> + Type<Any>,
    {
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert(e);
        }
        if self.numbered {
            let n = self.args.len();
            self.push(format_args!("${n}"))
        } else {
            self.push("?")
        }
    }

    /// Appends `VALUES (…), (…)`, one parenthesised row per item; `row` binds
    /// the item's values through the [`Separated`] it is given.
    pub(crate) fn push_values<I, F>(&mut self, items: I, mut row: F) -> &mut QueryBuilder
    where
        I: IntoIterator,
        F: FnMut(Separated<'_>, I::Item),
    {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push("(");
            row(
                Separated {
                    builder: self,
                    first: true,
                },
                item,
            );
            self.push(")");
        }
        self
    }

    /// The finished statement, or the error a value gave when it was bound.
    pub(crate) fn build<'q>(self) -> crate::Result<Query<'q, Any, AnyArguments>> {
        match self.error {
            Some(e) => Err(crate::Error::Db(sqlx::Error::Encode(e))),
            None => Ok(sqlx::query_with(AssertSqlSafe(self.sql), self.args)),
        }
    }
}

/// The values of one row of [`QueryBuilder::push_values`], comma-separated.
pub(crate) struct Separated<'b> {
    builder: &'b mut QueryBuilder,
    first: bool,
}

impl Separated<'_> {
    pub(crate) fn push_bind<'t, T>(&mut self, value: T) -> &mut Self
    where
        T: Encode<'t, Any> + Type<Any>,
    {
        if !self.first {
            self.builder.push(", ");
        }
        self.first = false;
        self.builder.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_stay_within_the_parameter_budget() {
        for columns in [1, 3, 12, 24, 100, 300] {
            let rows = rows_per_statement(columns);
            assert!(rows >= 1);
            assert!(rows == 1 || rows * columns <= PARAMS_PER_STATEMENT);
            assert!((rows + 1) * columns > PARAMS_PER_STATEMENT);
        }
        assert_eq!(rows_per_statement(0), PARAMS_PER_STATEMENT);
    }

    #[test]
    fn placeholders_are_numbered_for_postgres_and_anonymous_for_sqlite() {
        let text = |backend| {
            let mut q = QueryBuilder::new(backend, "SELECT 1 WHERE a = ");
            q.push_bind(1_i64).push(" AND (b, c) IN ");
            q.push_values([(2_i64, "x"), (3, "y")], |mut row, (b, c)| {
                row.push_bind(b).push_bind(c);
            });
            q.sql
        };
        assert_eq!(
            text(Backend::Postgres),
            "SELECT 1 WHERE a = $1 AND (b, c) IN VALUES ($2, $3), ($4, $5)"
        );
        assert_eq!(
            text(Backend::Sqlite),
            "SELECT 1 WHERE a = ? AND (b, c) IN VALUES (?, ?), (?, ?)"
        );
    }
}
