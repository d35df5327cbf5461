//! The Halo database tables a SQL report (`POST /api/Report`) can select from, with the API field of the
//! emulator's records each column holds.
//!
//! Built from `shared/reference/halo-api.md` 2.3 ("Bulk reads via SQL reports"): the table names and its
//! "column → API field" table, which come from a real Halo database schema dump ([SQL],
//! `provisiondata/ProvisionData.HaloPSA.ApiClient` `docs/schema.sql`). The column types are that dump's
//! (`Usite` and `Sarea` are `float`, `Udepartment` an `int` department id, flags `bit`, dates `datetime`).
//! 2.3 names `AreaAzureTenant` as the tenant mapping table without listing its columns: they are taken from
//! the same dump (`AATid`, `AATDetailsId`, `AATAreaId`, `AATAzureTenantId`, `AATAzureTenantName`,
//! `aatazuretenantdomain`), each holding the `AreaAzureTenant` API field of the same meaning (halo-api.md
//! 3.1). Nothing here comes from the queries csp-sync sends.

/// A column's SQL Server type, which decides how its value is written in a report row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlType {
    Int,
    Float,
    Bit,
    Text,
    DateTime,
}

/// Where a column's value comes from in the emulator's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The record's API field of that name.
    Field(&'static str),
    /// `USERS.Udepartment`: the id of the user's department (a `UserDepartment` row, halo-api.md 2.3),
    /// not its text. The emulator numbers the distinct department texts it holds.
    DepartmentId,
    /// A column the reference names without saying what it holds: always `NULL`.
    Null,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub name: &'static str,
    pub ty: SqlType,
    pub source: Source,
}

/// Which records a table's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    /// One row per record of this API entity (inactive ones included: a table holds every row).
    Entity(&'static str),
    /// One row per `azure_tenants` entry of every client (`AreaAzureTenant`), with `client_id` set.
    ClientTenants,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Table {
    pub name: &'static str,
    pub rows: Rows,
    pub columns: &'static [Column],
}

const fn col(name: &'static str, ty: SqlType, field: &'static str) -> Column {
    Column {
        name,
        ty,
        source: Source::Field(field),
    }
}

use SqlType::{Bit, DateTime, Float, Int, Text};

/// The tables of halo-api.md 2.3.
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "USERS",
        rows: Rows::Entity("Users"),
        columns: &[
            col("Uid", Int, "id"),
            col("Usite", Float, "site_id"),
            col("uusername", Text, "name"),
            col("uFirstName", Text, "firstname"),
            col("uLastName", Text, "surname"),
            col("uemail", Text, "emailaddress"),
            col("uemail2", Text, "email2"),
            col("uemail3", Text, "email3"),
            col("Ulogin", Text, "login"),
            col("uinactive", Bit, "inactive"),
            col("UAzureOID", Text, "azureoid"),
            col("UAzureTenantId", Text, "azure_tenant_id"),
            col("UTitle", Text, "title"),
            Column {
                name: "Udepartment",
                ty: Int,
                source: Source::DepartmentId,
            },
            col("uextn", Text, "phonenumber"),
            col("umobile", Text, "mobilenumber"),
            col("umobile2", Text, "mobilenumber2"),
            col("uisserviceaccount", Bit, "isserviceaccount"),
            col("UisContractContact", Bit, "iscontractcontact"),
        ],
    },
    Table {
        name: "SITE",
        rows: Rows::Entity("Site"),
        columns: &[
            col("Ssitenum", Int, "id"),
            col("sdesc", Text, "name"),
            col("Sarea", Float, "client_id"),
            col("SIsInactive", Bit, "inactive"),
            col("SIsInvoiceSite", Bit, "isinvoicesite"),
            col("SAzureTenantId", Text, "azuretenantid"),
        ],
    },
    Table {
        name: "AREA",
        rows: Rows::Entity("Client"),
        columns: &[
            col("Aarea", Int, "id"),
            col("aareadesc", Text, "name"),
            col("AIsInactive", Bit, "inactive"),
            col("AWebsite", Text, "website"),
            col("ADomain", Text, "domain"),
            // Named in 2.3 with no API field: what Halo keeps there is not known.
            Column {
                name: "AAzureTenantId",
                ty: Text,
                source: Source::Null,
            },
        ],
    },
    Table {
        name: "AreaAzureTenant",
        rows: Rows::ClientTenants,
        columns: &[
            col("AATid", Int, "id"),
            col("AATDetailsId", Int, "details_id"),
            col("AATAreaId", Int, "client_id"),
            col("AATAzureTenantId", Text, "azure_tenant_id"),
            col("AATAzureTenantName", Text, "azure_tenant_name"),
            col("aatazuretenantdomain", Text, "azure_tenant_domain"),
        ],
    },
    Table {
        name: "DEVICE",
        rows: Rows::Entity("Asset"),
        columns: &[
            col("Did", Int, "id"),
            col("Dsite", Int, "site_id"),
            col("dinvno", Text, "inventory_number"),
            col("Dtype", Int, "assettype_id"),
            col("dinactive", Bit, "inactive"),
            col("DIntuneId", Text, "intune_id"),
            col("DAzureTenantId", Text, "azureTenantId"),
            col("DStatus", Int, "status_id"),
        ],
    },
    Table {
        name: "Licence",
        rows: Rows::Entity("SoftwareLicence"),
        columns: &[
            col("LID", Int, "id"),
            col("LDesc", Text, "name"),
            col("LCount", Int, "count"),
            col("Larea", Int, "client_id"),
            col("LTenantId", Text, "tenant_id"),
            col("lstatus", Text, "status"),
            col("LBillingCycle", Text, "billing_cycle"),
            col("ltermduration", Text, "term_duration"),
            col("lautorenew", Bit, "autorenew"),
            col("LPurchaseDate", DateTime, "start_date"),
            col("LDueDate", DateTime, "end_date"),
            col("LManufacturer", Text, "manufacturer"),
            col("lproductsku", Text, "product_sku"),
            col("lthirdpartyproductid", Text, "third_party_product"),
            col("lconsumedcount", Int, "licences_in_use"),
        ],
    },
];

/// The table of that name (SQL Server names are case-insensitive under Halo's default collation).
pub(crate) fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name.eq_ignore_ascii_case(name))
}

impl Table {
    /// The index of a column of that name.
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }
}
