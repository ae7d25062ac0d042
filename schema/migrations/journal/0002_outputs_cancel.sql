CREATE TABLE `canceled_deployments` (
	`deployment_id` text PRIMARY KEY NOT NULL,
	`command_seq` integer NOT NULL,
	`canceled_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `steps` ADD `outputs` text;