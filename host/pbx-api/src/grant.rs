//! What a caller may hand on: every route that creates, changes or removes a
//! principal or a credential asks [`Grants`] first. A grant is a subset of the
//! granter's own rights, by construction: the rights of a role are read from
//! the route table (the scopes of every route the role may call), so a narrowed
//! integration token can only create a user whose every reachable scope it
//! holds itself, and no route added later escapes the rule.

use std::collections::{BTreeMap, BTreeSet};

use store::UserRole;

use crate::access::{Access, Principal};
use crate::error::{ApiError, ApiResult};

/// The scopes each role can use, computed once from the route table.
#[derive(Debug, Clone)]
pub(crate) struct Grants {
    by_role: BTreeMap<&'static str, BTreeSet<&'static str>>,
}

/// Provider admin > tenant admin > user.
fn rank(role: UserRole) -> u8 {
    match role {
        UserRole::ProviderAdmin => 2,
        UserRole::TenantAdmin => 1,
        UserRole::User => 0,
    }
}

impl Grants {
    pub(crate) fn from_table(config: &crate::ApiConfig) -> Grants {
        let mut by_role: BTreeMap<&'static str, BTreeSet<&'static str>> = BTreeMap::new();
        for role in [
            UserRole::ProviderAdmin,
            UserRole::TenantAdmin,
            UserRole::User,
        ] {
            let scopes = crate::routes::table(config)
                .into_iter()
                .filter_map(|r| match r.access {
                    Access::Global { roles, scope } | Access::Tenant { roles, scope }
                        if roles.admits(role) =>
                    {
                        Some(scope)
                    }
                    _ => None,
                })
                .collect();
            by_role.insert(role.as_str(), scopes);
        }
        Grants { by_role }
    }

    /// The scopes a login of `role` can use.
    pub(crate) fn scopes_of(&self, role: UserRole) -> impl Iterator<Item = &'static str> + '_ {
        self.by_role
            .get(role.as_str())
            .into_iter()
            .flat_map(|s| s.iter().copied())
    }

    /// Whether `granter` may create, change or remove a principal of `role`:
    /// the role is not above the granter's, and the granter holds every scope
    /// a login of that role could use.
    pub(crate) fn may_act_on(&self, granter: &Principal, role: UserRole) -> ApiResult<()> {
        if rank(role) > rank(granter.role) {
            return Err(ApiError::forbidden(format!(
                "a {} cannot grant the role {}",
                granter.role.as_str(),
                role.as_str()
            )));
        }
        if let Some(missing) = self.scopes_of(role).find(|s| !granter.has_scope(s)) {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "missing_scope",
                format!(
                    "a {} can use the scope {missing}, which the caller lacks",
                    role.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// Whether `granter` may issue a token with `scopes`: it holds each one.
    pub(crate) fn may_issue(&self, granter: &Principal, scopes: &[String]) -> ApiResult<()> {
        match scopes.iter().find(|s| !granter.has_scope(s)) {
            Some(missing) => Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "missing_scope",
                format!("the caller cannot grant the scope {missing} it lacks"),
            )),
            None => Ok(()),
        }
    }
}
