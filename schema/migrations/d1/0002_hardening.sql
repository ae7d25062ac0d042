ALTER TABLE `deployment_steps` ADD `reported_at` integer;--> statement-breakpoint
CREATE INDEX `deployment_steps_status` ON `deployment_steps` (`deployment_id`,`status`);--> statement-breakpoint
CREATE INDEX `deployment_steps_agent_status` ON `deployment_steps` (`agent_id`,`status`);--> statement-breakpoint
CREATE INDEX `idempotency_keys_created_at` ON `idempotency_keys` (`created_at`);