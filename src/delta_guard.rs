//! The check that keeps an incomplete stored read from deactivating anyone (SPEC sections 8 and 9).
//!
//! A delta round only says what changed since the stored read; users missing from that stored read (a state
//! file cut short, edited, or restored from an older copy, with its delta link kept) would look like
//! leavers although Graph never reported them removed. So when a delta-based read would leave an active
//! linked Halo contact without its Entra user, and no `@removed` explains it, the tenant is read in full
//! before planning.

use std::collections::BTreeSet;

use crate::model::{EntraUser, HaloSnapshot};

/// The labels of the active Halo contacts of this client linked to an Entra user of `tenant_id` who is
/// neither in `users` nor among the `removed` ids Graph reported (lower-case object ids).
pub fn unexplained_missing(
    halo: &HaloSnapshot,
    client_id: i64,
    tenant_id: &str,
    users: &[EntraUser],
    removed: &[String],
) -> Vec<String> {
    let known: BTreeSet<String> = users
        .iter()
        .map(|u| u.id.to_lowercase())
        .chain(removed.iter().map(|r| r.to_lowercase()))
        .collect();
    halo.users
        .iter()
        .filter(|h| h.client_id == client_id && !h.inactive)
        .filter(|h| {
            h.azure_tenant_id
                .as_deref()
                .is_none_or(|t| t.is_empty() || t.eq_ignore_ascii_case(tenant_id))
        })
        .filter_map(|h| {
            let oid = h.azureoid.as_deref().filter(|o| !o.is_empty())?;
            (!known.contains(&oid.to_lowercase())).then(|| {
                h.emailaddress
                    .clone()
                    .unwrap_or_else(|| format!("Halo contact #{}", h.id))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HaloUser;

    fn contact(id: i64, client: i64, oid: Option<&str>, inactive: bool) -> HaloUser {
        HaloUser {
            id,
            client_id: client,
            azureoid: oid.map(str::to_string),
            inactive,
            emailaddress: Some(format!("c{id}@x")),
            ..HaloUser::default()
        }
    }

    #[test]
    fn only_active_linked_contacts_of_the_client_without_user_or_removal_count() {
        let halo = HaloSnapshot {
            users: vec![
                contact(1, 7, Some("a"), false),
                contact(2, 7, Some("b"), false),
                contact(3, 7, Some("c"), true),
                contact(4, 8, Some("d"), false),
                contact(5, 7, None, false),
                contact(6, 7, Some("e"), false),
            ],
            ..HaloSnapshot::default()
        };
        let users = vec![EntraUser {
            id: "a".into(),
            ..EntraUser::default()
        }];
        assert_eq!(
            unexplained_missing(&halo, 7, "t", &users, &["E".into()]),
            vec!["c2@x".to_string()]
        );
    }
}
