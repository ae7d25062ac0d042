CREATE TABLE `agents` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`credential_hash` text NOT NULL,
	`status` text DEFAULT 'offline' NOT NULL,
	`version` text,
	`hostname` text,
	`last_seen_at` integer,
	`created_at` integer NOT NULL,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `agents_name_unique` ON `agents` (`name`);--> statement-breakpoint
CREATE UNIQUE INDEX `agents_credential_hash_unique` ON `agents` (`credential_hash`);--> statement-breakpoint
CREATE TABLE `api_tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`token_hash` text NOT NULL,
	`role` text NOT NULL,
	`created_at` integer NOT NULL,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_tokens_token_hash_unique` ON `api_tokens` (`token_hash`);--> statement-breakpoint
CREATE TABLE `deployment_steps` (
	`id` text PRIMARY KEY NOT NULL,
	`deployment_id` text NOT NULL,
	`agent_id` text NOT NULL,
	`position` integer NOT NULL,
	`name` text NOT NULL,
	`type` text NOT NULL,
	`command` text NOT NULL,
	`timeout_seconds` integer,
	`retry` text NOT NULL,
	`status` text NOT NULL,
	`exit_code` integer,
	`reason` text,
	`started_at` integer,
	`finished_at` integer,
	`log_length` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE INDEX `deployment_steps_deployment` ON `deployment_steps` (`deployment_id`,`agent_id`,`position`);--> statement-breakpoint
CREATE TABLE `deployment_targets` (
	`deployment_id` text NOT NULL,
	`agent_id` text NOT NULL,
	`command_id` text NOT NULL,
	`dispatched_at` integer,
	PRIMARY KEY(`deployment_id`, `agent_id`)
);
--> statement-breakpoint
CREATE UNIQUE INDEX `deployment_targets_command_id_unique` ON `deployment_targets` (`command_id`);--> statement-breakpoint
CREATE TABLE `deployments` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`status` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`finished_at` integer
);
--> statement-breakpoint
CREATE INDEX `deployments_created_at` ON `deployments` (`created_at`);--> statement-breakpoint
CREATE TABLE `registration_tokens` (
	`token_hash` text PRIMARY KEY NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`used_at` integer,
	`used_by_agent_id` text
);
--> statement-breakpoint
CREATE TABLE `step_logs` (
	`step_id` text NOT NULL,
	`offset` integer NOT NULL,
	`data` blob NOT NULL,
	PRIMARY KEY(`step_id`, `offset`)
);
