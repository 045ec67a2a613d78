from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        # The foreign key (deferred SQL) is created in this operation's transaction: no
        # later operation changes gamma or alpha.
        migrations.AddField(
            "Gamma", "other", models.ForeignKey("tests.Alpha", models.CASCADE, null=True)
        ),
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
    ]
