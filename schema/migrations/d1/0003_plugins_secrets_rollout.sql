CREATE TABLE `deployment_plugins` (
	`deployment_id` text NOT NULL,
	`plugin_id` text NOT NULL,
	`version` text NOT NULL,
	PRIMARY KEY(`deployment_id`, `plugin_id`, `version`)
);
--> statement-breakpoint
CREATE INDEX `deployment_plugins_version` ON `deployment_plugins` (`plugin_id`,`version`);--> statement-breakpoint
CREATE TABLE `plugins` (
	`id` text NOT NULL,
	`version` text NOT NULL,
	`name` text NOT NULL,
	`description` text NOT NULL,
	`manifest` text NOT NULL,
	`sha256` text NOT NULL,
	`size` integer NOT NULL,
	`uploaded_at` integer NOT NULL,
	PRIMARY KEY(`id`, `version`)
);
--> statement-breakpoint
CREATE TABLE `secrets` (
	`name` text PRIMARY KEY NOT NULL,
	`sealed` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `agents` ADD `tags` text DEFAULT '[]' NOT NULL;--> statement-breakpoint
ALTER TABLE `agents` ADD `properties` text DEFAULT '{}' NOT NULL;--> statement-breakpoint
ALTER TABLE `deployment_steps` ADD `definition` text;--> statement-breakpoint
ALTER TABLE `deployment_steps` ADD `outputs` text;--> statement-breakpoint
ALTER TABLE `deployment_steps` ADD `plugin_id` text;--> statement-breakpoint
ALTER TABLE `deployment_steps` ADD `plugin_version` text;--> statement-breakpoint
ALTER TABLE `deployment_targets` ADD `wave` integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE `deployment_targets` ADD `agent_properties` text DEFAULT '{}' NOT NULL;--> statement-breakpoint
ALTER TABLE `deployment_targets` ADD `cancel_sent_at` integer;--> statement-breakpoint
ALTER TABLE `deployments` ADD `properties` text DEFAULT '{}' NOT NULL;--> statement-breakpoint
ALTER TABLE `deployments` ADD `target_tags` text;--> statement-breakpoint
ALTER TABLE `deployments` ADD `rollout` text;--> statement-breakpoint
ALTER TABLE `deployments` ADD `waves` integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE `deployments` ADD `current_wave` integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE `deployments` ADD `canceled_at` integer;