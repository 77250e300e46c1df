// Identity and size bound of the guest report, apart from its zod schema (report-json.ts) so the
// agent can name its document without loading zod at run time.
export const REPORT_SCHEMA_ID = 'virtmiti/guest-report/v1'
/** Largest report the host accepts, in bytes (8192 CPUs x ~300 bytes, with headroom). */
export const REPORT_MAX_BYTES = 4 * 1024 * 1024
