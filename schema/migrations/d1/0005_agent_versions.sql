-- Issue 9, agent packages: one row per uploaded agent version (bytes in R2, bucket
-- AGENT_PACKAGES); pinned_at marks the version an admin pinned as "current".
CREATE TABLE `agent_versions` (
	`version` text PRIMARY KEY NOT NULL,
	`sha256` text NOT NULL,
	`platforms` text NOT NULL,
	`size` integer NOT NULL,
	`uploaded_at` integer NOT NULL,
	`pinned_at` integer
);
