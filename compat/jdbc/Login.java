// Logs in with the PostgreSQL JDBC driver as BI tools do (user and password properties) and
// prints what happened: `ok <one>` after `SELECT 1`, or `sqlstate=<SQLSTATE>` and the
// server's message when the login is refused.
//
//   java -cp postgresql.jar:. Login jdbc:postgresql://HOST:PORT/DB USER PASSWORD [NAME=VALUE]...
//
// Each NAME=VALUE is a further connection property (sslmode=verify-full, sslrootcert=FILE…);
// sslmode is `disable` unless one says otherwise.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.Properties;

public class Login {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        props.setProperty("sslmode", "disable");
        for (int i = 3; i < args.length; i++) {
            String[] pair = args[i].split("=", 2);
            props.setProperty(pair[0], pair[1]);
        }
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            try (ResultSet rs = conn.createStatement().executeQuery("SELECT 1")) {
                rs.next();
                System.out.println("ok " + rs.getInt(1));
            }
        } catch (SQLException e) {
            System.out.println("sqlstate=" + e.getSQLState());
            System.out.println("message=" + e.getMessage());
        }
    }
}
