//! One customer tenant's Graph reads folded into one HTTP request: a `$batch` (reference 3.8) of the users
//! read, `subscribedSkus`, `directory/subscriptions` and the first `managedDevices` page, whichever the
//! tenant's modules need. Later pages (`@odata.nextLink`) are read outside the batch, one request each.
//!
//! Users: with a stored delta link, the batch carries that delta round. Without one (a first sync, or a
//! link Graph no longer accepts), the users are read in full with `/users?$top=999` (999 a page, where
//! the delta endpoint ignores `$top` for users, reference 3.3) and the delta link to store comes from
//! `/users/delta?$deltatoken=latest`, which returns only a delta link (reference 3.3, line "`$deltaToken=
//! latest` returns only a deltaLink", under `user-delta.md`). The `latest` call runs BEFORE the full read
//! (`dependsOn` in the batch, or sent first outside it): a change made while the users are read is then
//! both in the full read and in the next delta round, and applying a change twice is harmless, where the
//! other order would lose a change made between the read and the token.
//!
//! Item failures are what the same request sent alone would give: the item becomes a [`Response`] and
//! goes through the same error parsing; 429, 5xx and 401 items are retried by [`Graph::batch`]; a delta
//! link Graph refuses (410 or `syncStateNotFound`/`resyncRequired`) is followed by the full read above.

use serde_json::Value;

use super::{
    BatchRequest, BatchResponse, DEVICE_SELECT, Graph, GraphCompanySubscription,
    GraphManagedDevice, GraphSubscribedSku, GraphUser, Page, USER_SELECT, UsersDelta,
    is_delta_expired, latest_delta_url,
};
use crate::api::Error;

/// How a tenant's users are to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsersRead {
    /// A delta round from this stored delta link.
    Delta(String),
    /// Every user; with `track`, also a delta link for the next run.
    Full { track: bool },
}

/// What a tenant's modules need from Graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantNeeds {
    pub users: Option<UsersRead>,
    pub skus: bool,
    pub company_subscriptions: bool,
    pub devices: bool,
}

/// The users as read.
#[derive(Debug, Clone)]
pub enum UsersFetch {
    /// The changes since the stored delta link.
    Delta(UsersDelta),
    /// Every user, the delta link to store when tracking, and why a stored link was not used (it
    /// expired) when there was one.
    Full {
        users: Vec<GraphUser>,
        delta_link: Option<String>,
        expired: Option<String>,
    },
}

/// A tenant's Graph reads, each `None` when not needed.
#[derive(Debug, Clone, Default)]
pub struct TenantRead {
    pub users: Option<Result<UsersFetch, Error>>,
    pub skus: Option<Result<Vec<GraphSubscribedSku>, Error>>,
    pub company_subscriptions: Option<Result<Vec<GraphCompanySubscription>, Error>>,
    pub devices: Option<Result<Vec<GraphManagedDevice>, Error>>,
}

const LATEST: &str = "latest";
const USERS: &str = "users";
const SKUS: &str = "skus";
const COMPANY: &str = "subscriptions";
const DEVICES: &str = "devices";

fn users_url() -> String {
    format!("/users?$select={USER_SELECT}&$top=999")
}

fn devices_url() -> String {
    format!("/deviceManagement/managedDevices?$select={DEVICE_SELECT}")
}

impl Graph {
    /// A link relative to the version root (`/users/delta?...`) when it is on this Graph's `/v1.0`,
    /// as a `$batch` item's `url` must be (reference 3.8); `None` otherwise.
    fn relative(&self, link: &str) -> Option<String> {
        let rebased = self.rebase(link);
        rebased
            .strip_prefix(&format!("{}/v1.0", self.base_url))
            .filter(|rest| rest.starts_with('/'))
            .map(str::to_string)
    }

    /// Reads what `needs` asks of `tenant`: one `$batch` when two or more reads are needed, then the
    /// later pages of each. A failure of the batch itself (transport, token) is every read's failure.
    pub async fn read_tenant(&self, tenant: &str, needs: &TenantNeeds) -> TenantRead {
        let mut reqs: Vec<(BatchRequest, String)> = Vec::new();
        let mut push = |id: &str, url: String, after: Option<&str>| {
            let mut q = BatchRequest::get(id, url.clone());
            if let Some(a) = after {
                q = q.after(a);
            }
            reqs.push((q, url));
        };
        let mut direct_delta = None;
        match &needs.users {
            Some(UsersRead::Delta(link)) => match self.relative(link) {
                Some(rel) => push(USERS, rel, None),
                None => direct_delta = Some(link.clone()),
            },
            Some(UsersRead::Full { track: true }) => {
                push(LATEST, latest_delta_url(), None);
                push(USERS, users_url(), Some(LATEST));
            }
            Some(UsersRead::Full { track: false }) => push(USERS, users_url(), None),
            None => {}
        }
        if needs.skus {
            push(SKUS, "/subscribedSkus".into(), None);
        }
        if needs.company_subscriptions {
            push(COMPANY, "/directory/subscriptions".into(), None);
        }
        if needs.devices {
            push(DEVICES, devices_url(), None);
        }
        let mut out = TenantRead::default();
        if let Some(link) = direct_delta {
            out.users = Some(self.delta_or_full(tenant, &link).await);
        }
        if reqs.len() < 2 {
            // Nothing to fold: the one read goes alone.
            for (q, _) in reqs {
                self.read_alone(tenant, &q.id, needs, &mut out).await;
            }
            return out;
        }
        let urls: Vec<(String, String)> = reqs
            .iter()
            .map(|(q, u)| (q.id.clone(), u.clone()))
            .collect();
        let answers = match self
            .batch(tenant, reqs.into_iter().map(|(q, _)| q).collect())
            .await
        {
            Ok(a) => a,
            Err(e) => {
                for (id, _) in &urls {
                    fail(id, e.clone(), &mut out);
                }
                return out;
            }
        };
        let answer = |id: &str| {
            answers.iter().find(|r| r.id == id).and_then(|r| {
                urls.iter()
                    .find(|(i, _)| i == id)
                    .map(|(_, u)| (r, u.as_str()))
            })
        };
        if let Some((r, url)) = answer(USERS) {
            out.users = Some(match &needs.users {
                Some(UsersRead::Delta(link)) => match self.page::<Value>(r, url) {
                    Ok(page) => {
                        let url = self.rebase(link);
                        match self.delta_from(tenant, url, Some(page)).await {
                            Err(Error::DeltaExpired { reason, .. }) => {
                                self.users_full(tenant, true, Some(reason)).await
                            }
                            other => other.map(UsersFetch::Delta),
                        }
                    }
                    Err(Error::Api(e)) if is_delta_expired(&e) => {
                        let reason = super::expired_reason(&e);
                        tracing::info!(tenant, "delta link expired ({reason}); reading all users");
                        self.users_full(tenant, true, Some(reason)).await
                    }
                    Err(e) => Err(e),
                },
                Some(UsersRead::Full { track }) => {
                    let link = if *track {
                        answer(LATEST).map(|(l, lurl)| self.latest_link(tenant, l, lurl))
                    } else {
                        None
                    };
                    match link {
                        Some(Err(e)) => Err(e),
                        link => match self.page::<GraphUser>(r, url) {
                            Ok(page) => self
                                .list_from(&Self::customer(tenant), self.absolute(url), Some(page))
                                .await
                                .map(|users| UsersFetch::Full {
                                    users,
                                    delta_link: link.and_then(Result::ok),
                                    expired: None,
                                }),
                            Err(e) => Err(e),
                        },
                    }
                }
                None => Err(Error::Invalid("users were not asked for".into())),
            });
        }
        if let Some((r, url)) = answer(SKUS) {
            out.skus = Some(self.rest_of(tenant, r, url).await);
        }
        if let Some((r, url)) = answer(COMPANY) {
            out.company_subscriptions = Some(self.rest_of(tenant, r, url).await);
        }
        if let Some((r, url)) = answer(DEVICES) {
            out.devices = Some(self.rest_of(tenant, r, url).await);
        }
        out
    }

    fn absolute(&self, rel: &str) -> String {
        format!("{}/v1.0{rel}", self.base_url)
    }

    /// A batch item's body as a page, or the error the same request sent alone would give.
    fn page<T: serde::de::DeserializeOwned>(
        &self,
        r: &BatchResponse,
        url: &str,
    ) -> Result<Page<T>, Error> {
        let resp = r.to_response(&self.base_url, url).error_for_status()?;
        Ok(resp.json()?)
    }

    /// A listing whose first page is a batch item's body.
    async fn rest_of<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &str,
        r: &BatchResponse,
        url: &str,
    ) -> Result<Vec<T>, Error> {
        let page = self.page::<T>(r, url)?;
        self.list_from(&Self::customer(tenant), self.absolute(url), Some(page))
            .await
    }

    /// The delta link of a `latest` item (its round may still have pages to follow, all empty).
    fn latest_link(&self, tenant: &str, r: &BatchResponse, url: &str) -> Result<String, Error> {
        let page = self.page::<Value>(r, url)?;
        match page.delta_link.filter(|d| !d.is_empty()) {
            Some(link) if page.value.is_empty() => Ok(link),
            _ => Err(Error::Invalid(format!(
                "Graph users/delta?$deltatoken=latest of tenant {tenant} did not return just a delta link"
            ))),
        }
    }

    /// Every user; with `track`, the `latest` delta link taken first (see the module comment).
    pub async fn users_full(
        &self,
        tenant: &str,
        track: bool,
        expired: Option<String>,
    ) -> Result<UsersFetch, Error> {
        let delta_link = if track {
            Some(self.users_latest_delta_link(tenant).await?)
        } else {
            None
        };
        let users = self.users(tenant).await?;
        Ok(UsersFetch::Full {
            users,
            delta_link,
            expired,
        })
    }

    /// A delta round from a stored link, or the full read when Graph no longer accepts it.
    async fn delta_or_full(&self, tenant: &str, link: &str) -> Result<UsersFetch, Error> {
        match self.users_delta(tenant, Some(link)).await {
            Ok(d) => Ok(UsersFetch::Delta(d)),
            Err(Error::DeltaExpired { reason, .. }) => {
                tracing::info!(tenant, "delta link expired ({reason}); reading all users");
                self.users_full(tenant, true, Some(reason)).await
            }
            Err(e) => Err(e),
        }
    }

    /// One read sent on its own (nothing to batch it with).
    async fn read_alone(&self, tenant: &str, id: &str, needs: &TenantNeeds, out: &mut TenantRead) {
        match id {
            USERS => {
                out.users = Some(match &needs.users {
                    Some(UsersRead::Delta(link)) => self.delta_or_full(tenant, link).await,
                    Some(UsersRead::Full { track }) => self.users_full(tenant, *track, None).await,
                    None => return,
                });
            }
            SKUS => out.skus = Some(self.subscribed_skus(tenant).await),
            COMPANY => out.company_subscriptions = Some(self.directory_subscriptions(tenant).await),
            DEVICES => out.devices = Some(self.managed_devices(tenant).await),
            _ => {}
        }
    }
}

/// The read a batch item stands for failed as `e`.
fn fail(id: &str, e: Error, out: &mut TenantRead) {
    match id {
        USERS => out.users = Some(Err(e)),
        SKUS => out.skus = Some(Err(e)),
        COMPANY => out.company_subscriptions = Some(Err(e)),
        DEVICES => out.devices = Some(Err(e)),
        _ => {}
    }
}
