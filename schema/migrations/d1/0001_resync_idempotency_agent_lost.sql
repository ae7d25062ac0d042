CREATE TABLE `idempotency_keys` (
	`key` text PRIMARY KEY NOT NULL,
	`request_hash` text NOT NULL,
	`deployment_id` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `deployments` ADD `agent_lost_after_seconds` integer DEFAULT 900 NOT NULL;--> statement-breakpoint
CREATE INDEX `deployment_targets_undispatched` ON `deployment_targets` (`agent_id`,`dispatched_at`);