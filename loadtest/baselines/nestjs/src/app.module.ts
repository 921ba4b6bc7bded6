import { Module } from '@nestjs/common';
import { JwtModule } from '@nestjs/jwt';
import { config } from './config';
import { DbService } from './db.service';
import { NotificationsController } from './notifications/notifications.controller';
import { NotificationsGateway } from './notifications/notifications.gateway';
import { NotificationsService } from './notifications/notifications.service';

@Module({
  imports: [JwtModule.register({ secret: config.jwtSecret, verifyOptions: { algorithms: ['HS256'] } })],
  controllers: [NotificationsController],
  providers: [DbService, NotificationsGateway, NotificationsService],
})
export class AppModule {}
